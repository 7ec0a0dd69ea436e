//! Telling the formats apart, and opening a file in one call.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use crate::asterisk::asterisk_csv_checked;
use crate::error::{FormatError, RowError};
use crate::freeswitch::json::freeswitch_json;
use crate::freeswitch::xml::freeswitch_xml;
use crate::record::{CallRecord, Format};

/// How many bytes [`parse_file`] and [`parse_reader`] look at to decide the format (at most;
/// they stop at the end of the first non-blank line).
pub const SNIFF_BYTES: usize = 64 * 1024;

/// The records of one input, in order, as [`parse_file`] streams them.
pub type Records = Box<dyn Iterator<Item = Result<CallRecord, RowError>> + Send>;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Names the format of an input from its first bytes (a UTF-8 byte order mark and leading
/// whitespace are skipped): `<` is FreeSWITCH XML, `{` or `[` FreeSWITCH JSON, and a first
/// line that parses as CSV with 16 to 21 fields Asterisk `cdr_csv`. The content decides;
/// `file_name` only labels the error, which says what was seen (never the bytes themselves).
///
/// A CSV is only recognised here by its column count: whether its columns are in the
/// cdr_csv order is checked by [`asterisk_csv_checked`] (and [`parse_file`]).
pub fn detect(first_bytes: &[u8], file_name: Option<&str>) -> Result<Format, FormatError> {
    let what = file_name.unwrap_or("input").to_owned();
    let body = first_bytes.strip_prefix(UTF8_BOM).unwrap_or(first_bytes);
    let body = body.trim_ascii_start();
    let Some(&first) = body.first() else {
        return Err(FormatError::Empty { what });
    };
    match first {
        b'<' => Ok(Format::FreeswitchXml),
        b'{' | b'[' => Ok(Format::FreeswitchJson),
        _ => match binary_kind(first_bytes) {
            Some(kind) => Err(FormatError::Unrecognised {
                what,
                seen: kind.to_owned(),
            }),
            None => sniff_csv(body, what),
        },
    }
}

fn binary_kind(bytes: &[u8]) -> Option<&'static str> {
    const KINDS: [(&[u8], &str); 6] = [
        (b"\x1F\x8B", "gzip-compressed data: decompress it first"),
        (b"PK\x03\x04", "a ZIP archive: extract it first"),
        (b"%PDF", "a PDF document"),
        (b"SQLite format 3\0", "an SQLite database"),
        (b"\xFF\xFE", "UTF-16 text: export it as UTF-8"),
        (b"\xFE\xFF", "UTF-16 text: export it as UTF-8"),
    ];
    if let Some((_, kind)) = KINDS.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(kind);
    }
    bytes
        .iter()
        .take(1024)
        .any(|&b| b == 0)
        .then_some("binary data (it contains NUL bytes)")
}

fn sniff_csv(body: &[u8], what: String) -> Result<Format, FormatError> {
    // Only complete lines (the sniffed bytes may end mid-row), unless that is all there is.
    let complete = match body.iter().rposition(|&b| b == b'\n') {
        Some(end) => body.get(..=end).unwrap_or(body),
        None => body,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(complete);
    let mut record = csv::ByteRecord::new();
    let fields = match reader.read_byte_record(&mut record) {
        Ok(true) => record.len(),
        _ => 0,
    };
    if (16..=21).contains(&fields) {
        return Ok(Format::AsteriskCsv);
    }
    let seen = if fields > 1 {
        format!(
            "its first line has {fields} comma-separated fields, but Asterisk cdr_csv rows have \
             16 to 21; a cdr_custom Master.csv (configurable columns) cannot be read"
        )
    } else {
        format!(
            "not XML, JSON or comma-separated text: it starts with {}",
            char_class(body.first().copied().unwrap_or_default())
        )
    };
    Err(FormatError::Unrecognised { what, seen })
}

/// A first byte, described without giving content away.
fn char_class(b: u8) -> String {
    match b {
        b'0'..=b'9' => "a digit".into(),
        b'a'..=b'z' | b'A'..=b'Z' => "a letter".into(),
        b if b.is_ascii_punctuation() => format!("{:?}", char::from(b)),
        b if b.is_ascii() => format!("control byte 0x{b:02X}"),
        b => format!("non-ASCII byte 0x{b:02X}"),
    }
}

/// Opens `path`, names its format from the first bytes ([`detect`]) and streams its records.
///
/// Reads at most [`SNIFF_BYTES`] before deciding, never the whole file. An Asterisk CSV
/// whose first rows do not fit the cdr_csv layout is refused here
/// ([`FormatError::ForeignLayout`]).
pub fn parse_file(path: impl AsRef<Path>) -> Result<Records, FormatError> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let file = File::open(path).map_err(|source| FormatError::Io {
        what: what.clone(),
        source,
    })?;
    parse_reader(BufReader::with_capacity(SNIFF_BYTES, file), Some(&what))
}

/// [`parse_file`] for any buffered reader (an upload, a pipe); `file_name` labels errors.
pub fn parse_reader<R>(mut reader: R, file_name: Option<&str>) -> Result<Records, FormatError>
where
    R: BufRead + Send + 'static,
{
    let what = file_name.unwrap_or("input");
    let head = read_head(&mut reader).map_err(|source| FormatError::Io {
        what: what.to_owned(),
        source,
    })?;
    let format = detect(&head, Some(what))?;
    let input = Cursor::new(head).chain(reader);
    Ok(match format {
        Format::AsteriskCsv => Box::new(asterisk_csv_checked(input)?),
        Format::FreeswitchJson => Box::new(freeswitch_json(input)),
        Format::FreeswitchXml => Box::new(freeswitch_xml(input)),
        Format::Api => {
            return Err(FormatError::Unrecognised {
                what: what.to_owned(),
                seen: "API records are not read from files".into(),
            });
        }
    })
}

/// Reads up to the end of the first non-blank line, [`SNIFF_BYTES`] at most.
fn read_head<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    while head.len() < SNIFF_BYTES {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let take = chunk.len().min(SNIFF_BYTES - head.len());
        head.extend_from_slice(chunk.get(..take).unwrap_or_default());
        reader.consume(take);
        let content = head.trim_ascii_start();
        if !content.is_empty() && content.contains(&b'\n') {
            break;
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_formats() {
        assert_eq!(
            detect(b"\xEF\xBB\xBF  <?xml", None).unwrap(),
            Format::FreeswitchXml
        );
        assert_eq!(
            detect(b"\n{\"a\":1}", None).unwrap(),
            Format::FreeswitchJson
        );
        assert_eq!(detect(b"[{}]", None).unwrap(), Format::FreeswitchJson);
        let row = b"\"\",\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"2020-01-01 00:00:00\",,\"2020-01-01 00:00:01\",1,0,\"NO ANSWER\",\"DOCUMENTATION\"\n";
        assert_eq!(detect(row, None).unwrap(), Format::AsteriskCsv);
    }

    #[test]
    fn says_what_it_saw() {
        let e = detect(b"", Some("x.csv")).unwrap_err().to_string();
        assert!(e.contains("x.csv is empty"), "{e}");
        let e = detect(b"a,b,c\n1,2,3\n", Some("x.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 comma-separated fields"), "{e}");
        assert!(e.contains("cdr_custom"), "{e}");
        let e = detect(b"PK\x03\x04....", None).unwrap_err().to_string();
        assert!(e.contains("ZIP"), "{e}");
        let e = detect(b"Hello there", None).unwrap_err().to_string();
        assert!(e.contains("starts with a letter"), "{e}");
        assert!(!e.contains("Hello"), "{e}");
    }
}
