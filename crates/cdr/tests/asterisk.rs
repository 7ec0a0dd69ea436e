//! Asterisk cdr_csv: the real sample files, synthetic layouts, bad rows, streaming.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::rc::Rc;

use steward_cdr::{
    CallRecord, Disposition, Format, FormatError, RowError, asterisk_csv, asterisk_csv_checked,
    parse_file, raw_hash, write_asterisk_csv,
};

macro_rules! data {
    ($name:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/asterisk/",
            $name
        )
    };
}

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

fn parse(bytes: &[u8]) -> (Vec<CallRecord>, Vec<RowError>) {
    split(asterisk_csv(bytes))
}

fn rewrite(records: &[CallRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    write_asterisk_csv(records, &mut out).unwrap();
    out
}

/// Byte equality with a readable failure: the first differing line.
fn assert_same(actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let a: Vec<&[u8]> = actual.split(|&b| b == b'\n').collect();
    let e: Vec<&[u8]> = expected.split(|&b| b == b'\n').collect();
    for (i, (x, y)) in a.iter().zip(&e).enumerate() {
        assert!(
            x == y,
            "line {}:\n  got      {}\n  expected {}",
            i + 1,
            String::from_utf8_lossy(x),
            String::from_utf8_lossy(y)
        );
    }
    panic!("{} lines written, {} expected", a.len(), e.len());
}

/// An 18-column row in cdr_csv's own quoting.
fn row18(src: &str, disposition: &str, answer: &str, uniqueid: &str) -> String {
    format!(
        "\"acct\",\"{src}\",\"200\",\"ctx\",\"\"\"Ann\"\" <{src}>\",\"SIP/a-1\",\"SIP/b-2\",\"Dial\",\"SIP/b,30\",\
         \"2020-03-01 10:00:00\",{answer},\"2020-03-01 10:01:00\",60,50,\"{disposition}\",\"BILLING\",\"{uniqueid}\",\"\"\n"
    )
}

#[test]
fn testsuite_good_five_legs_of_one_call() {
    let bytes = std::fs::read(data!("testsuite-good.csv")).unwrap();
    let (records, errors) = parse(&bytes);
    assert_eq!((records.len(), errors.len()), (5, 0), "{errors:?}");

    let first = &records[0];
    assert_eq!(first.source_format, Format::AsteriskCsv);
    assert_eq!(first.line, 1);
    assert_eq!(first.account_code, None);
    assert_eq!(first.caller_raw, b"test");
    assert_eq!(first.caller_name_raw.as_deref(), Some(&b"Test User"[..]));
    assert_eq!(
        first.clid_raw.as_deref(),
        Some(&b"\"Test User\" <test>"[..])
    );
    assert_eq!(first.callee_raw, b"100");
    assert_eq!(first.context.as_deref(), Some("context"));
    assert_eq!(first.channel.as_deref(), Some("SIP/test-02897fd8"));
    assert_eq!(first.dst_channel, None);
    assert_eq!(first.last_app.as_deref(), Some("Hangup"));
    assert_eq!(first.last_data, None);
    assert_eq!(first.start, 1_231_977_075);
    assert_eq!(first.answer, Some(1_231_977_075));
    assert_eq!(first.end, 1_231_977_080);
    assert_eq!((first.duration_secs, first.billsec), (5, 5));
    assert_eq!(first.disposition, Disposition::Answered);
    assert_eq!(first.ama_flags.as_deref(), Some("DOCUMENTATION"));
    assert_eq!(first.leg_id.as_deref(), Some("1231977075.0"));
    assert_eq!(first.user_field, None);
    assert_eq!(first.csv_layout.map(|l| l.columns), Some(18));
    let line1 = bytes.split(|&b| b == b'\n').next().unwrap();
    assert_eq!(first.raw_hash, raw_hash(line1));

    // Asterisk's own test data: billsec above duration, NO ANSWER with an answer time.
    assert_eq!((records[1].duration_secs, records[1].billsec), (5, 7));
    let dispositions: Vec<_> = records.iter().map(|r| r.disposition).collect();
    use Disposition::*;
    assert_eq!(dispositions, [Answered, Answered, Failed, NoAnswer, Busy]);
    assert_eq!(
        records.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    // Same uniqueid, five different rows: five keys.
    let keys: HashSet<_> = records
        .iter()
        .map(|r| (r.leg_id.clone(), r.raw_hash, r.occurrence))
        .collect();
    assert_eq!(keys.len(), 5);
    assert_same(&rewrite(&records), &bytes);
}

#[test]
fn testsuite_buggy_unterminated_quote_is_a_row_error() {
    let bytes = std::fs::read(data!("testsuite-buggy.csv")).unwrap();
    let (records, errors) = parse(&bytes);
    assert_eq!(records.len(), 0);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 1);
    assert!(
        errors[0].reason.contains("unterminated quoted field"),
        "{}",
        errors[0]
    );
}

#[test]
fn mockdata_218_rows_parse_and_rewrite_byte_for_byte() {
    let bytes = std::fs::read(data!("report-generator-mockdata.csv")).unwrap();
    let (records, errors) = parse(&bytes);
    assert_eq!((records.len(), errors.len()), (218, 0), "{errors:?}");
    assert_same(&rewrite(&records), &bytes);

    let count = |d: Disposition| records.iter().filter(|r| r.disposition == d).count();
    assert_eq!(count(Disposition::Answered), 133);
    assert_eq!(count(Disposition::NoAnswer), 83);
    assert_eq!(count(Disposition::Busy), 2);
    assert_eq!(records.iter().filter(|r| r.answer.is_none()).count(), 80);
    assert!(records.iter().all(|r| r.csv_layout.unwrap().columns == 18));
    // This file writes the unset answer time as "" (cdr_csv itself writes it bare).
    let quoted = records
        .iter()
        .filter(|r| r.csv_layout.unwrap().quoted_empty_time)
        .count();
    assert_eq!(quoted, 80);
    assert_eq!(records.last().unwrap().line, 218);

    // `"" <number>`: no name. 14 rows have a clid whose number is not src.
    assert_eq!(records[0].caller_name_raw, None);
    assert_eq!(
        records[2].caller_name_raw.as_deref(),
        Some(&b"Marget Biernacki"[..])
    );
    let foreign_clid = records
        .iter()
        .filter(|r| {
            let clid = r.clid_raw.as_deref().unwrap();
            !clid.ends_with(format!("<{}>", String::from_utf8_lossy(&r.caller_raw)).as_bytes())
        })
        .count();
    assert_eq!(foreign_clid, 14);

    // 8 rows repeat the row before them byte for byte (pseudonymised forked legs): the
    // occurrence keeps them apart, a re-sent file gives the same keys.
    assert_eq!(records.iter().filter(|r| r.occurrence == 1).count(), 8);
    assert_eq!(records.iter().filter(|r| r.occurrence > 1).count(), 0);
    let key = |r: &CallRecord| (r.leg_id.clone(), r.raw_hash, r.occurrence);
    let keys: HashSet<_> = records.iter().map(key).collect();
    assert_eq!(keys.len(), 218);
    let leg_and_hash: HashSet<_> = records
        .iter()
        .map(|r| (r.leg_id.clone(), r.raw_hash))
        .collect();
    assert_eq!(leg_and_hash.len(), 210);
    let (again, _) = parse(&bytes);
    assert_eq!(again.iter().map(key).collect::<HashSet<_>>(), keys);
}

#[test]
fn parse_file_reads_the_samples() {
    let counts = |path: &str| {
        let (ok, err) = split(parse_file(path).unwrap());
        (ok.len(), err.len())
    };
    assert_eq!(counts(data!("testsuite-good.csv")), (5, 0));
    assert_eq!(counts(data!("testsuite-buggy.csv")), (0, 1));
    assert_eq!(counts(data!("report-generator-mockdata.csv")), (218, 0));
}

/// cdr_custom's Master.csv: same data, its own column order (here the default-ish
/// "${CDR(clid)}","${CDR(src)}",... order with the start time first).
fn cdr_custom_file() -> Vec<u8> {
    let mut file = Vec::new();
    for i in 0..5 {
        file.extend_from_slice(
            format!(
                "\"2017-06-20 09:49:{i:02}\",\"\"\"Ann\"\" <791-445-9811>\",\"791-445-9811\",\"715-413-9112\",\"hq\",\
                 \"SIP/a-1\",\"SIP/b-2\",\"Dial\",\"SIP/b\",\"2017-06-20 09:49:30\",\"2017-06-20 09:49:40\",\
                 \"10\",\"0\",\"NO ANSWER\",\"DOCUMENTATION\",\"1497952162.{i}\",\"\",\"\"\n"
            )
            .as_bytes(),
        );
    }
    file
}

#[test]
fn cdr_custom_layout_is_refused_not_mis_mapped() {
    let file = cdr_custom_file();

    let Err(error) = asterisk_csv_checked(&file[..]) else {
        panic!("a cdr_custom layout was accepted");
    };
    let message = error.to_string();
    match &error {
        FormatError::ForeignLayout {
            line,
            column,
            fitted,
            sampled,
            ..
        } => {
            assert_eq!((*line, *column, *fitted, *sampled), (1, Some(12), 0, 5));
        }
        other => panic!("{other:?}"),
    }
    assert!(message.contains("column 12 (end)"), "{message}");
    assert!(message.contains("cdr_custom"), "{message}");
    assert!(message.contains("different layout"), "{message}");
    // No personal data in the message.
    assert!(!message.contains("791-445-9811"), "{message}");

    // The lazy reader says the same in one row error, then stops.
    let items: Vec<_> = asterisk_csv(&file[..]).collect();
    assert_eq!(items.len(), 1);
    let only = items[0].as_ref().unwrap_err();
    assert!(only.reason.starts_with("file refused"), "{only}");
    assert!(only.reason.contains("cdr_custom"), "{only}");

    // And a file on disk is refused by parse_file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Master.csv");
    std::fs::write(&path, &file).unwrap();
    let Err(error) = parse_file(&path) else {
        panic!("parse_file accepted a cdr_custom layout");
    };
    assert!(
        matches!(error, FormatError::ForeignLayout { .. }),
        "{error}"
    );
}

#[test]
fn mostly_fitting_file_gives_per_row_errors() {
    let custom = cdr_custom_file();
    let custom_row = custom.split_inclusive(|&b| b == b'\n').next().unwrap();
    let mut file = Vec::new();
    file.extend_from_slice(row18("101", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1").as_bytes());
    file.extend_from_slice(custom_row);
    file.extend_from_slice(row18("102", "NO ANSWER", "", "1.2").as_bytes());
    file.extend_from_slice(row18("103", "BUSY", "", "1.3").as_bytes());
    let (records, errors) = split(asterisk_csv_checked(&file[..]).unwrap());
    assert_eq!(records.len(), 3);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 2);
    assert!(
        errors[0].reason.contains("column 12 (end)"),
        "{}",
        errors[0]
    );
}

fn columns_row(extra: &[&str]) -> String {
    let mut row = String::from(
        "\"\",\"100\",\"200\",\"ctx\",\"\",\"SIP/a\",\"\",\"Dial\",\"\",\"2021-05-05 05:05:05\",,\"2021-05-05 05:05:15\",10,0,\"NO ANSWER\",\"OMIT\"",
    );
    for e in extra {
        row.push(',');
        row.push_str(e);
    }
    row.push('\n');
    row
}

#[test]
fn every_column_count() {
    let cases: [(&[&str], u8); 6] = [
        (&[], 16),
        (&["\"u-17\""], 17),
        (&["\"u-18\"", "\"uf\""], 18),
        (&["\"peer\"", "\"link\"", "7"], 19),
        (&["\"u-20\"", "\"peer\"", "\"link\"", "8"], 20),
        (&["\"u-21\"", "\"uf\"", "\"peer\"", "\"link\"", "9"], 21),
    ];
    for (extra, columns) in cases {
        let row = columns_row(extra);
        let (records, errors) = parse(row.as_bytes());
        assert!(errors.is_empty(), "{columns}: {errors:?}");
        let r = &records[0];
        assert_eq!(r.csv_layout.map(|l| l.columns), Some(columns));
        assert!(!r.csv_layout.unwrap().quoted_empty_time);
        assert_eq!(r.answer, None);
        assert_eq!(r.duration_secs, 10);
        assert_eq!(r.ama_flags.as_deref(), Some("OMIT"));
        let expect_leg = match columns {
            16 | 19 => None,
            n => Some(format!("u-{n}")),
        };
        assert_eq!(r.leg_id, expect_leg, "{columns}");
        assert_eq!(
            r.user_field.is_some(),
            matches!(columns, 18 | 21),
            "{columns}"
        );
        assert_eq!(r.peer_account.is_some(), columns >= 19, "{columns}");
        assert_eq!(r.linked_id.as_deref(), (columns >= 19).then_some("link"));
        assert_eq!(
            r.sequence,
            (columns >= 19).then_some(i64::from(columns) - 12)
        );
        assert_same(&rewrite(&records), row.as_bytes());
    }
    for bad in [15usize, 22] {
        let mut row = columns_row(&[]);
        row.pop();
        if bad == 15 {
            row.truncate(row.rfind(',').unwrap());
        } else {
            row.push_str(",\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"");
        }
        row.push('\n');
        let mut file = row18("1", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1");
        file.push_str(&row);
        let (records, errors) = parse(file.as_bytes());
        assert_eq!(records.len(), 1);
        assert_eq!(errors.len(), 1, "{bad}");
        assert!(
            errors[0].reason.contains(&format!("{bad} columns")),
            "{}",
            errors[0]
        );
    }
}

#[test]
fn non_utf8_bytes_are_kept() {
    let row: &[u8] = b"\"acc\",\"+49\xE9\",\"0\xFF1\",\"ctx\",\"\"\"J\xF6rg\"\" <+49\xE9>\",\"SIP/x\",\"\",\"Dial\",\"SIP/\xE9,30\",\"2020-01-01 00:00:00\",,\"2020-01-01 00:00:09\",9,0,\"NO ANSWER\",\"DOCUMENTATION\",\"9.9\",\"note \xA0\"\n";
    let (records, errors) = parse(row);
    assert!(errors.is_empty(), "{errors:?}");
    let r = &records[0];
    assert_eq!(r.caller_raw, b"+49\xE9");
    assert_eq!(r.callee_raw, b"0\xFF1");
    assert_eq!(r.caller_name_raw.as_deref(), Some(&b"J\xF6rg"[..]));
    assert_eq!(r.last_data.as_deref(), Some(&b"SIP/\xE9,30"[..]));
    assert_eq!(r.user_field.as_deref(), Some(&b"note \xA0"[..]));
    assert_same(&rewrite(&records), row);
}

#[test]
fn bad_rows_never_cost_good_rows() {
    let mut file = String::new();
    file.push_str(&row18("1", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1")); // 1
    file.push_str(&row18("2", "ANSWERD", "\"2020-03-01 10:00:10\"", "1.2")); // 2: bad word
    file.push('\n'); // 3: blank
    file.push_str(&row18("3", "NO ANSWER", "\"yesterday\"", "1.3")); // 4: bad time
    file.push_str("\"\",\"4\",\"200\",\"ctx\",\"unterminated\n"); // 5: quote never closes
    file.push_str(&row18("5", "BUSY", "", "1.5")); // 6
    file.push_str(&row18("6", "NO ANSWER", "", "1.6")); // 7
    file.push_str("\"\",\"7\",\"oops\"\"\n"); // 8: odd quotes again
    file.push_str(&row18("8", "CANCEL", "", "1.8")); // 9
    file.push_str(&row18("9", "CONGESTION", "", "1.9").replace('\n', "\r\n")); // 10, CRLF
    file.push_str(&row18("10", "UNKNOWN", "", "1.10").replace("\"BILLING\"", "\"Unknown\"")); // 11
    file.push_str(&row18("11", "FAILED", "", "1.11").replace(",60,", ",6o,")); // 12
    file.push_str(&row18("12", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.12").replace('\n', "")); // 13, no final LF

    let (records, errors) = parse(file.as_bytes());
    let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
    assert_eq!(lines, [1, 6, 7, 9, 10, 11, 13]);
    let callers: Vec<&[u8]> = records.iter().map(|r| r.caller_raw.as_slice()).collect();
    assert_eq!(callers, [&b"1"[..], b"5", b"6", b"8", b"9", b"10", b"12"]);
    let error_lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(error_lines, [2, 4, 5, 8, 12], "{errors:#?}");
    assert!(
        errors[0].reason.contains("column 15 (disposition)"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].reason.contains("column 11 (answer)"),
        "{}",
        errors[1]
    );
    assert!(errors[2].reason.contains("unterminated"), "{}", errors[2]);
    assert!(errors[3].reason.contains("unterminated"), "{}", errors[3]);
    assert!(
        errors[4]
            .reason
            .contains("column 13 (duration) should be an integer"),
        "{}",
        errors[4]
    );
    // The CRLF row hashes like its LF twin would.
    let lf = row18("9", "CONGESTION", "", "1.9");
    assert_eq!(records[4].raw_hash, raw_hash(lf.trim_end().as_bytes()));
}

#[test]
fn overlong_line_is_skipped_and_reading_goes_on() {
    let mut file = row18("1", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1").into_bytes();
    file.extend(std::iter::repeat_n(b'x', 300 * 1024));
    file.push(b'\n');
    file.extend_from_slice(row18("2", "BUSY", "", "1.2").as_bytes());
    file.extend_from_slice(b"\"\",\"open quote\n");
    file.extend_from_slice(b"no quote here, just text\n");
    file.extend_from_slice(b"nor here\n");
    file.extend_from_slice(row18("3", "BUSY", "", "1.3").as_bytes());
    let (records, errors) = parse(&file);
    let callers: Vec<&[u8]> = records.iter().map(|r| r.caller_raw.as_slice()).collect();
    assert_eq!(callers, [&b"1"[..], b"2", b"3"]);
    assert_eq!(
        records.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 3, 7]
    );
    let error_lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(error_lines, [2, 4, 5, 6], "{errors:#?}");
    assert!(
        errors[0].reason.contains("longer than 128 KiB"),
        "{}",
        errors[0]
    );
    assert!(errors[1].reason.contains("unterminated"), "{}", errors[1]);
    assert!(errors[2].reason.contains("2 columns"), "{}", errors[2]);
    assert!(errors[3].reason.contains("1 columns"), "{}", errors[3]);
}

#[test]
fn quote_left_open_over_more_than_the_row_limit() {
    let mut file = Vec::new();
    for i in 0..20 {
        file.extend_from_slice(row18(&i.to_string(), "BUSY", "", "1.1").as_bytes());
    }
    file.extend_from_slice(b"\"\",\"open quote\n"); // line 21
    for _ in 0..40_000 {
        file.extend_from_slice(b"abc\n"); // 160 KB without a quote
    }
    file.extend_from_slice(row18("last", "BUSY", "", "1.2").as_bytes());
    let (records, errors) = parse(&file);
    assert_eq!(records.len(), 21);
    assert_eq!(records[20].caller_raw, b"last");
    assert_eq!(records[20].line, 21 + 40_000 + 1);
    assert_eq!(errors.len(), 1 + 40_000);
    assert_eq!(errors[0].line, 21);
    assert!(errors[0].reason.contains("unterminated"), "{}", errors[0]);
    assert_eq!(errors[1].line, 22);
    assert_eq!(errors[40_000].line, 21 + 40_000);
}

#[test]
fn byte_order_mark_and_blank_lines() {
    let mut file = b"\xEF\xBB\xBF".to_vec();
    file.extend_from_slice(row18("1", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1").as_bytes());
    file.extend_from_slice(b"\n\n");
    file.extend_from_slice(row18("2", "BUSY", "", "1.2").as_bytes());
    let (records, errors) = parse(&file);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 4]);
    assert_eq!(
        records[0].raw_hash,
        raw_hash(
            row18("1", "ANSWERED", "\"2020-03-01 10:00:10\"", "1.1")
                .trim_end()
                .as_bytes()
        )
    );
}

/// Generates cdr_csv rows on demand; never holds more than one row.
struct RowGenerator {
    rows: u64,
    next: u64,
    current: Vec<u8>,
    pos: usize,
    produced: Rc<Cell<u64>>,
}

impl Read for RowGenerator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            if self.next == self.rows {
                return Ok(0);
            }
            self.current = generated_row(self.next).into_bytes();
            self.pos = 0;
            self.next += 1;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.produced.set(self.produced.get() + n as u64);
        Ok(n)
    }
}

fn generated_row(i: u64) -> String {
    let start = 1_600_000_000 + i as i64 * 7;
    let time = steward_cdr::format_utc;
    format!(
        "\"\",\"+4420{i:07}\",\"+4479{:07}\",\"from-trunk\",\"\"\"Caller {i}\"\" <+4420{i:07}>\",\"PJSIP/trunk-{i:08x}\",\"PJSIP/ext-{i:08x}\",\"Dial\",\"PJSIP/ext,30\",\"{}\",\"{}\",\"{}\",65,60,\"ANSWERED\",\"DOCUMENTATION\",\"{start}.{i}\",\"\"\n",
        (i * 7919) % 10_000_000,
        time(start),
        time(start + 5),
        time(start + 65),
    )
}

#[test]
fn two_hundred_thousand_rows_stream_in_bounded_memory() {
    const ROWS: u64 = 200_000;
    let produced = Rc::new(Cell::new(0));
    let generator = RowGenerator {
        rows: ROWS,
        next: 0,
        current: Vec::new(),
        pos: 0,
        produced: Rc::clone(&produced),
    };
    let mut consumed = 0u64;
    let mut count = 0u64;
    let mut max_lead = 0u64;
    for item in asterisk_csv(generator) {
        let record = item.unwrap();
        count += 1;
        assert_eq!(record.line, count);
        consumed += generated_row(count - 1).len() as u64;
        // The parser is never far ahead of the rows it has handed out: the first 20 rows
        // (layout check) plus its read buffer.
        max_lead = max_lead.max(produced.get() - consumed);
    }
    assert_eq!(count, ROWS);
    assert!(produced.get() > 50 * 1024 * 1024, "{}", produced.get());
    assert!(max_lead < 64 * 1024, "parser ran {max_lead} bytes ahead");
}
