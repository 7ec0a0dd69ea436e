//! Format detection and parse_file / parse_reader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, BufReader, Read};

use steward_cdr::{Format, FormatError, detect, parse_file, parse_reader};

macro_rules! data {
    ($name:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/", $name)
    };
}

#[test]
fn detects_every_sample() {
    for (path, format) in [
        (data!("asterisk/testsuite-good.csv"), Format::AsteriskCsv),
        (data!("asterisk/testsuite-buggy.csv"), Format::AsteriskCsv),
        (
            data!("asterisk/report-generator-mockdata.csv"),
            Format::AsteriskCsv,
        ),
        (
            data!("freeswitch/json-cdr-fs16.json"),
            Format::FreeswitchJson,
        ),
        (
            data!("freeswitch/xml-cdr-error-call.xml"),
            Format::FreeswitchXml,
        ),
    ] {
        let bytes = std::fs::read(path).unwrap();
        let head = &bytes[..bytes.len().min(512)];
        assert_eq!(detect(head, Some(path)).unwrap(), format, "{path}");
    }
}

#[test]
fn other_files_are_named_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.csv", b"  \n\n", "is empty"),
        (
            "contacts.vcf",
            b"BEGIN:VCARD\nVERSION:3.0\n",
            "starts with a letter",
        ),
        (
            "custom.csv",
            b"\"100\",\"200\",\"2020-01-01 00:00:00\",\"ANSWERED\"\n",
            "4 comma-separated fields",
        ),
        ("cdr.csv.gz", b"\x1f\x8b\x08\x00rest", "gzip"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let Err(error) = parse_file(&path) else {
            panic!("{name} was accepted");
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains(name), "{name}: {message}");
    }
    let Err(error) = parse_file(dir.path().join("missing.csv")) else {
        panic!("a missing file was opened");
    };
    assert!(matches!(error, FormatError::Io { .. }), "{error}");
}

/// Hands out one byte per read, like a slow upload.
struct Trickle<R>(R);

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn parse_reader_sniffs_a_trickling_upload() {
    let bytes = std::fs::read(data!("asterisk/report-generator-mockdata.csv")).unwrap();
    let reader = BufReader::with_capacity(7, Trickle(io::Cursor::new(bytes)));
    let records = parse_reader(reader, Some("upload")).unwrap();
    let (ok, err): (Vec<_>, Vec<_>) = records.partition(Result::is_ok);
    assert_eq!((ok.len(), err.len()), (218, 0));
}
