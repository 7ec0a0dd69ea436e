//! FreeSWITCH `mod_json_cdr` (1.2 to current); documented on [`freeswitch_json`].

use std::io::{self, BufRead};

use serde_json::Value;

use super::{Callflow, FsCdr, to_record};
use crate::error::RowError;
use crate::record::{CallRecord, Format, Runs};

/// Largest JSON record held; larger ones are skipped with an error.
const MAX_RECORD: usize = 8 * 1024 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streaming reader of FreeSWITCH `mod_json_cdr` records; see [`freeswitch_json`].
pub struct FreeswitchJson<R: BufRead> {
    split: Splitter<R>,
    runs: Runs,
}

/// Reads FreeSWITCH `mod_json_cdr` records from `reader`, one [`CallRecord`] or
/// [`RowError`] per JSON object. Memory holds one object at a time.
///
/// The module writes one JSON object per call (one file, or one HTTP POST). This reader also
/// takes several objects in one stream: concatenated, one per line, or as the elements of a
/// top-level array. Objects are split out with a small scanner (strings, escapes and nesting
/// aware) so that one object at a time is held, then parsed with `serde_json` into a
/// `Value`. A key that appears twice in an object is not an error: the last value wins
/// (`serde_json`'s map semantics).
///
/// `callflow` is an array in 1.6+ and a single object before; numbers may be strings or
/// JSON numbers. Field mapping: see the [crate docs](crate).
///
/// A malformed object is a [`RowError`] and reading goes on with the next one. An object
/// left unclosed would swallow the objects after it; when it does not parse and a later line
/// starts with `{` (as every record written one per line or pretty-printed does), reading
/// resumes there.
pub fn freeswitch_json<R: BufRead>(reader: R) -> FreeswitchJson<R> {
    FreeswitchJson {
        split: Splitter {
            r: reader,
            pushback: Vec::new(),
            pushback_pos: 0,
            line: 1,
            offset: 0,
            done: false,
        },
        runs: Runs::default(),
    }
}

impl<R: BufRead> Iterator for FreeswitchJson<R> {
    type Item = Result<CallRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, bytes) = match self.split.next_piece()? {
            Piece::Error(error) => return Some(Err(error)),
            Piece::Object { line, bytes } => (line, bytes),
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(error) => {
                if let Some(next_line) = self.split.resume_at_next_record(&bytes) {
                    return Some(Err(RowError::new(
                        line,
                        format!(
                            "invalid JSON: the record is not closed before the next record \
                             starts at line {next_line}"
                        ),
                    )));
                }
                let message = error.to_string();
                let position = format!(" at line {} column {}", error.line(), error.column());
                let message = message.strip_suffix(&position).unwrap_or(&message);
                return Some(Err(RowError::new(
                    line,
                    format!(
                        "invalid JSON at line {}, column {}: {message}",
                        line + error.line() as u64 - 1,
                        error.column()
                    ),
                )));
            }
        };
        let result = cdr_from_value(&value)
            .map_err(|reason| RowError::new(line, reason))
            .and_then(|cdr| to_record(cdr, Format::FreeswitchJson, line, &bytes))
            .map(|mut record| {
                self.runs.number(&mut record);
                record
            });
        Some(result)
    }
}

fn scalar(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Number(n) => Some(n.to_string().into_bytes()),
        Value::Bool(b) => Some(b.to_string().into_bytes()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn scalars(value: Option<&Value>) -> std::collections::HashMap<String, Vec<u8>> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn cdr_from_value(value: &Value) -> Result<FsCdr, String> {
    let object = value
        .as_object()
        .ok_or("not a mod_json_cdr record: not a JSON object")?;
    let Some(variables) = object.get("variables").filter(|v| v.is_object()) else {
        return Err("not a mod_json_cdr record: no \"variables\" object".into());
    };
    let mut cdr = FsCdr {
        vars: scalars(Some(variables)),
        callflow: None,
        channel_direction: object
            .get("channel_data")
            .and_then(|c| c.get("direction"))
            .and_then(scalar),
    };
    let entries: Vec<&Value> = match object.get("callflow") {
        Some(Value::Array(entries)) => entries.iter().collect(),
        Some(entry @ Value::Object(_)) => vec![entry],
        _ => Vec::new(),
    };
    for entry in entries {
        cdr.offer_callflow(Callflow {
            index: entry
                .get("profile_index")
                .and_then(scalar)
                .and_then(|v| String::from_utf8_lossy(&v).trim().parse().ok()),
            profile: scalars(entry.get("caller_profile")),
            times: scalars(entry.get("times")),
        });
    }
    Ok(cdr)
}

enum Piece {
    Object { line: u64, bytes: Vec<u8> },
    Error(RowError),
}

/// Splits a byte stream into top-level JSON objects.
struct Splitter<R> {
    r: R,
    /// Bytes to read again before `r` (after a resync).
    pushback: Vec<u8>,
    pushback_pos: usize,
    /// Line of the next byte.
    line: u64,
    /// Bytes consumed so far.
    offset: u64,
    done: bool,
}

impl<R: BufRead> Splitter<R> {
    fn next_piece(&mut self) -> Option<Piece> {
        if self.done {
            return None;
        }
        match self.scan() {
            Ok(piece) => piece,
            Err(error) => {
                self.done = true;
                Some(Piece::Error(RowError::new(
                    self.line,
                    format!("read error, parsing stopped here: {error}"),
                )))
            }
        }
    }

    fn scan(&mut self) -> io::Result<Option<Piece>> {
        // Between records: whitespace, commas and array brackets; anything else is stray.
        let mut stray: Option<(u64, usize)> = None;
        loop {
            let Some(b) = self.peek()? else {
                self.done = true;
                return Ok(stray.map(stray_error));
            };
            if b == b'{' {
                if let Some(stray) = stray {
                    return Ok(Some(stray_error(stray)));
                }
                break;
            }
            let at_start = self.offset < 3;
            let line = self.line;
            self.bump(b);
            let separator = b.is_ascii_whitespace()
                || matches!(b, b',' | b'[' | b']')
                || (at_start && UTF8_BOM.contains(&b));
            if !separator {
                stray.get_or_insert((line, 0)).1 += 1;
            }
        }

        let line = self.line;
        let mut bytes = Vec::with_capacity(16 * 1024);
        let mut oversize = false;
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let Some(b) = self.peek()? else {
                self.done = true;
                if !oversize && let Some(next_line) = self.resume_at_next_record(&bytes) {
                    return Ok(Some(Piece::Error(RowError::new(
                        line,
                        format!(
                            "invalid JSON: the record is not closed before the next record \
                             starts at line {next_line}"
                        ),
                    ))));
                }
                return Ok(Some(Piece::Error(RowError::new(
                    line,
                    "truncated JSON record: the input ends inside it",
                ))));
            };
            self.bump(b);
            if bytes.len() < MAX_RECORD {
                bytes.push(b);
            } else {
                oversize = true;
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        if oversize {
            return Ok(Some(Piece::Error(RowError::new(
                line,
                format!(
                    "JSON record larger than {} MiB; skipped",
                    MAX_RECORD / 1024 / 1024
                ),
            ))));
        }
        Ok(Some(Piece::Object { line, bytes }))
    }

    /// `bytes` (a record just read) did not parse: if a later line in it starts with `{`,
    /// read again from there and return that line's number.
    fn resume_at_next_record(&mut self, bytes: &[u8]) -> Option<u64> {
        let newline = bytes.windows(2).position(|w| w == b"\n{")?;
        let rest = bytes.get(newline + 1..)?;
        let rest_lines = rest.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut pushback = rest.to_vec();
        pushback.extend_from_slice(self.pushback.get(self.pushback_pos..).unwrap_or_default());
        self.pushback = pushback;
        self.pushback_pos = 0;
        self.line -= rest_lines;
        self.offset -= rest.len() as u64;
        self.done = false;
        Some(self.line)
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.pushback.get(self.pushback_pos) {
            return Ok(Some(b));
        }
        loop {
            match self.r.fill_buf() {
                Ok(buf) => return Ok(buf.first().copied()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes the byte `b` that [`Self::peek`] returned.
    fn bump(&mut self, b: u8) {
        if self.pushback_pos < self.pushback.len() {
            self.pushback_pos += 1;
            if self.pushback_pos == self.pushback.len() {
                self.pushback = Vec::new();
                self.pushback_pos = 0;
            }
        } else {
            self.r.consume(1);
        }
        self.offset += 1;
        if b == b'\n' {
            self.line += 1;
        }
    }
}

fn stray_error((line, len): (u64, usize)) -> Piece {
    Piece::Error(RowError::new(
        line,
        format!("unexpected text between JSON records ({len} bytes); skipped"),
    ))
}
