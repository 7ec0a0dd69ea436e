//! Asterisk `cdr_csv` (`Master.csv`): reader and writer. The format and the rules for bad
//! rows are documented on [`asterisk_csv`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use csv::ByteRecord;

use crate::error::{FormatError, RowError};
use crate::record::{
    CallRecord, CsvLayout, Disposition, Format, Runs, bytes, name_from_clid, raw_hash, text,
};
use crate::time::{format_utc, parse_utc};

/// AMA flag words `cdr_csv` writes.
const AMA_FLAGS: [&str; 4] = ["OMIT", "BILLING", "DOCUMENTATION", "Unknown"];
/// Rows checked against the layout before the first record is returned.
const SNIFF_ROWS: usize = 20;
/// Outcomes (including broken rows) read at most while sniffing.
const SNIFF_MAX_OUTCOMES: usize = 100;
/// Bytes held at most for one row plus the parser's read-ahead. Asterisk itself never
/// writes a row longer than 1 KiB (its buffer size), so a longer "row" is an unterminated
/// quote running through the file or not cdr_csv at all.
const MAX_ROW_SPAN: usize = 128 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Which optional columns a row has, from its column count.
#[derive(Debug, Clone, Copy)]
struct Layout {
    uniqueid: bool,
    userfield: bool,
    newcols: bool,
}

impl Layout {
    fn for_columns(n: usize) -> Option<Layout> {
        let (uniqueid, userfield, newcols) = match n {
            16 => (false, false, false),
            17 => (true, false, false),
            18 => (true, true, false),
            19 => (false, false, true),
            20 => (true, false, true),
            21 => (true, true, true),
            _ => return None,
        };
        Some(Layout {
            uniqueid,
            userfield,
            newcols,
        })
    }

    fn columns(self) -> usize {
        16 + usize::from(self.uniqueid)
            + usize::from(self.userfield)
            + 3 * usize::from(self.newcols)
    }

    /// Name of the 0-based column `i`.
    fn column_name(self, i: usize) -> &'static str {
        const FIXED: [&str; 16] = [
            "accountcode",
            "src",
            "dst",
            "dcontext",
            "clid",
            "channel",
            "dstchannel",
            "lastapp",
            "lastdata",
            "start",
            "answer",
            "end",
            "duration",
            "billsec",
            "disposition",
            "amaflags",
        ];
        if let Some(name) = FIXED.get(i) {
            return name;
        }
        let mut optional = Vec::with_capacity(5);
        if self.uniqueid {
            optional.push("uniqueid");
        }
        if self.userfield {
            optional.push("userfield");
        }
        if self.newcols {
            optional.extend(["peeraccount", "linkedid", "sequence"]);
        }
        optional.get(i - FIXED.len()).copied().unwrap_or("extra")
    }
}

/// A row that does not fit the layout: which column and why.
struct Misfit {
    column: Option<usize>,
    reason: String,
}

/// What the step below produced.
enum Outcome {
    Record(Box<CallRecord>),
    /// Well-formed CSV that does not fit cdr_csv (counts for the layout check).
    Misfit {
        line: u64,
        misfit: Misfit,
    },
    /// Not even well-formed (unterminated quote, over-long row, read error).
    Broken(RowError),
}

/// Streaming reader of Asterisk `cdr_csv`; see [`asterisk_csv`].
pub struct AsteriskCsv<R: Read> {
    rdr: Option<csv::Reader<Tee<R>>>,
    fields: ByteRecord,
    /// Tee offset at which the current `csv::Reader` started.
    seg_base: u64,
    /// Line number of the byte at the start of the tee's log.
    next_line: u64,
    sniffed: bool,
    queue: VecDeque<Result<CallRecord, RowError>>,
    runs: Runs,
}

/// Reads Asterisk `cdr_csv` rows from `reader`, one [`CallRecord`] or [`RowError`] per row.
///
/// Streaming: memory stays bounded (one row, the CSV read-ahead and the first 20 rows kept
/// for the layout check) whatever the input size. If the file does not fit the cdr_csv
/// layout at all (see below), the iterator yields a single `RowError` starting with
/// "file refused" and stops; use [`asterisk_csv_checked`] to get that as a
/// [`FormatError`] up front instead.
///
/// # Layout (from Asterisk's `cdr/cdr_csv.c`)
/// `accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start,
/// answer, end, duration, billsec, disposition, amaflags`, then `uniqueid` if `loguniqueid`,
/// `userfield` if `loguserfield`, then `peeraccount, linkedid, sequence` if `newcdrcolumns`.
/// Strings are always double-quoted (inner quotes doubled), `duration`, `billsec` and
/// `sequence` never are, an unset time is an empty unquoted field (some files have `""`
/// instead: both are read, and [`CsvLayout`] remembers which for the writer), rows end with
/// LF (CRLF is accepted) and there is no header. Times are read as UTC (`usegmtime=yes`;
/// with Asterisk's default `usegmtime=no` they are the PBX's local time, which this crate
/// cannot know). [`CallRecord::raw_hash`] covers the row's bytes without its line end.
///
/// Column counts: 16, 17 (+uniqueid), 18 (+uniqueid, userfield), 19 (+the three new
/// columns), 20 (+uniqueid, new columns) and 21 (all). **17 and 20 are ambiguous**:
/// `cdr_csv` switches uniqueid and userfield on separately, so the extra column could be
/// the userfield alone. Nothing in the row tells them apart reliably; as uniqueid is by far
/// the more common setting, the column is read as uniqueid ([`CallRecord::leg_id`]).
///
/// # Bad rows and foreign layouts
/// Each row that does not parse is a [`RowError`] and reading goes on with the next row. A
/// quote that never closes would make a CSV parser swallow every following line into one
/// field: when a row spans several lines and does not parse (or its quotes do not balance),
/// only its first line is reported and parsing restarts on the line after it, so one bad
/// row never costs the good rows behind it.
///
/// `cdr_custom` writes a `Master.csv` too, in a configurable column order. Before anything is
/// returned, the first up to 20 well-formed rows are checked against the cdr_csv layout
/// (column count, times, integers, disposition and AMA flag words): if fewer than half of
/// them fit, the file is refused ([`FormatError::ForeignLayout`], naming the first column
/// that did not fit); otherwise the rows that do not fit are per-row errors. Rows cut short
/// by an unterminated quote are errors but do not count as evidence either way.
pub fn asterisk_csv<R: Read>(reader: R) -> AsteriskCsv<R> {
    AsteriskCsv {
        rdr: Some(csv_builder().from_reader(Tee::new(reader))),
        fields: ByteRecord::new(),
        seg_base: 0,
        next_line: 1,
        sniffed: false,
        queue: VecDeque::new(),
        runs: Runs::default(),
    }
}

/// Like [`asterisk_csv`], but checks the layout first (reading up to the first 20 rows) and
/// refuses a file that does not fit with [`FormatError::ForeignLayout`].
pub fn asterisk_csv_checked<R: Read>(reader: R) -> Result<AsteriskCsv<R>, FormatError> {
    let mut rows = asterisk_csv(reader);
    rows.sniff()?;
    Ok(rows)
}

fn csv_builder() -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(false).flexible(true);
    builder
}

impl<R: Read> Iterator for AsteriskCsv<R> {
    type Item = Result<CallRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.sniffed
            && let Err(refused) = self.sniff()
        {
            let line = match &refused {
                FormatError::ForeignLayout { line, .. } => *line,
                _ => 1,
            };
            return Some(Err(RowError::new(line, format!("file refused: {refused}"))));
        }
        if let Some(item) = self.queue.pop_front() {
            return Some(item);
        }
        Some(match self.step()? {
            Outcome::Record(record) => Ok(*record),
            Outcome::Misfit { line, misfit } => Err(RowError::new(line, misfit.reason)),
            Outcome::Broken(error) => Err(error),
        })
    }
}

impl<R: Read> AsteriskCsv<R> {
    /// Reads the first rows into the queue and decides whether the layout fits.
    fn sniff(&mut self) -> Result<(), FormatError> {
        if self.sniffed {
            return Ok(());
        }
        self.sniffed = true;
        let (mut sampled, mut fitted, mut outcomes) = (0, 0, 0);
        let mut first_misfit: Option<(u64, Option<usize>, String)> = None;
        while sampled < SNIFF_ROWS && outcomes < SNIFF_MAX_OUTCOMES {
            let Some(outcome) = self.step() else { break };
            outcomes += 1;
            match outcome {
                Outcome::Record(record) => {
                    sampled += 1;
                    fitted += 1;
                    self.queue.push_back(Ok(*record));
                }
                Outcome::Misfit { line, misfit } => {
                    sampled += 1;
                    first_misfit
                        .get_or_insert_with(|| (line, misfit.column, misfit.reason.clone()));
                    self.queue
                        .push_back(Err(RowError::new(line, misfit.reason)));
                }
                Outcome::Broken(error) => self.queue.push_back(Err(error)),
            }
        }
        match first_misfit {
            Some((line, column, reason)) if fitted * 2 < sampled => {
                self.queue.clear();
                self.rdr = None;
                Err(FormatError::ForeignLayout {
                    line,
                    column,
                    reason,
                    fitted,
                    sampled,
                })
            }
            _ => Ok(()),
        }
    }

    /// Reads and classifies the next row.
    fn step(&mut self) -> Option<Outcome> {
        let rdr = self.rdr.as_mut()?;
        match rdr.read_byte_record(&mut self.fields) {
            Ok(false) => {
                self.rdr = None;
                None
            }
            Err(error) => {
                if rdr.get_ref().overflow {
                    Some(self.recover_from_overflow())
                } else {
                    self.rdr = None;
                    let line = self.next_line;
                    Some(Outcome::Broken(RowError::new(
                        line,
                        format!("read error, parsing stopped here: {error}"),
                    )))
                }
            }
            Ok(true) => {
                let start = self.seg_base + self.fields.position().map_or(0, |p| p.byte());
                let end = self.seg_base + rdr.position().byte();
                let tee = rdr.get_ref();
                let span = tee.span(start, end);
                // Blank lines before the row are consumed with it.
                let lead = span
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                let lead_lines = count(span.get(..lead).unwrap_or_default(), b'\n');
                let line = self.next_line + lead_lines;
                let body = trim_line_end(span.get(lead..).unwrap_or_default());
                let quotes_odd = count(body, b'"') % 2 == 1;
                let first_newline = body.iter().position(|&b| b == b'\n');
                let parsed = parse_row(&self.fields, line, body);
                let span_lines = count(span, b'\n');

                if let Some(newline) = first_newline
                    && (quotes_odd || parsed.is_err())
                {
                    // A quote left open on this line swallowed the lines after it.
                    let resume = start + (lead + newline + 1) as u64;
                    self.restart(resume, line + 1);
                    return Some(Outcome::Broken(RowError::new(
                        line,
                        "unterminated quoted field: the quotes on this line do not balance, so \
                         it ran into the following lines; skipped this line only",
                    )));
                }
                rdr.get_mut().trim_to(end);
                self.next_line += span_lines;
                if quotes_odd {
                    return Some(Outcome::Broken(RowError::new(
                        line,
                        "unterminated quoted field: the row ends inside a quote (the file was \
                         probably cut off while being written)",
                    )));
                }
                Some(match parsed {
                    Ok(mut record) => {
                        self.runs.number(&mut record);
                        Outcome::Record(Box::new(record))
                    }
                    Err(misfit) => Outcome::Misfit { line, misfit },
                })
            }
        }
    }

    /// The row being read outgrew [`MAX_ROW_SPAN`]: report its first line, go on after it.
    fn recover_from_overflow(&mut self) -> Outcome {
        let Some(rdr) = self.rdr.as_mut() else {
            return Outcome::Broken(RowError::new(self.next_line, "row too long"));
        };
        let tee = rdr.get_mut();
        let log = &tee.log;
        let lead = log
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let line = self.next_line + count(log.get(..lead).unwrap_or_default(), b'\n');
        let rest = log.get(lead..).unwrap_or_default();
        let limit = MAX_ROW_SPAN / 1024;
        match rest.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let resume = tee.log_base + (lead + newline + 1) as u64;
                self.restart(resume, line + 1);
                Outcome::Broken(RowError::new(
                    line,
                    format!(
                        "unterminated quoted field: the row runs on for more than {limit} KiB; \
                         skipped this line only"
                    ),
                ))
            }
            None => {
                // One line longer than the limit: drop the rest of it unread.
                tee.skip_line = true;
                let resume = tee.log_base + log.len() as u64;
                self.restart(resume, line + 1);
                Outcome::Broken(RowError::new(
                    line,
                    format!("row longer than {limit} KiB (Asterisk writes at most 1 KiB); skipped"),
                ))
            }
        }
    }

    /// Starts a fresh CSV parser at tee offset `resume`, which is the start of line `line`.
    fn restart(&mut self, resume: u64, line: u64) {
        let Some(rdr) = self.rdr.take() else { return };
        let mut tee = rdr.into_inner();
        tee.rewind_to(resume);
        self.seg_base = resume;
        self.next_line = line;
        self.rdr = Some(csv_builder().from_reader(tee));
    }
}

/// Passes bytes through to the CSV parser and keeps those of the current row (plus the
/// parser's read-ahead), so each row's raw bytes can be hashed and a broken row re-read.
struct Tee<R> {
    inner: R,
    /// Bytes to deliver before reading `inner` again (after a restart).
    pending: Vec<u8>,
    pending_pos: usize,
    /// Delivered bytes from `log_base` on.
    log: Vec<u8>,
    log_base: u64,
    started: bool,
    /// Discard bytes up to and including the next LF.
    skip_line: bool,
    /// The log outgrew [`MAX_ROW_SPAN`]: the read failed on purpose.
    overflow: bool,
}

impl<R: Read> Tee<R> {
    fn new(inner: R) -> Tee<R> {
        Tee {
            inner,
            pending: Vec::new(),
            pending_pos: 0,
            log: Vec::with_capacity(16 * 1024),
            log_base: 0,
            started: false,
            skip_line: false,
            overflow: false,
        }
    }

    /// Delivered bytes `[start, end)`, when still held.
    fn span(&self, start: u64, end: u64) -> &[u8] {
        let from = usize::try_from(start.saturating_sub(self.log_base)).unwrap_or(usize::MAX);
        let to = usize::try_from(end.saturating_sub(self.log_base)).unwrap_or(usize::MAX);
        self.log.get(from..to).unwrap_or_default()
    }

    /// Forgets delivered bytes before offset `end`.
    fn trim_to(&mut self, end: u64) {
        let n = usize::try_from(end.saturating_sub(self.log_base))
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        self.log.drain(..n);
        self.log_base += n as u64;
    }

    /// Makes offset `resume` the next byte delivered again.
    fn rewind_to(&mut self, resume: u64) {
        let from = usize::try_from(resume.saturating_sub(self.log_base))
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        let mut pending = self.log.split_off(from);
        pending.extend_from_slice(self.pending.get(self.pending_pos..).unwrap_or_default());
        self.pending = pending;
        self.pending_pos = 0;
        self.log.clear();
        self.log_base = resume;
        self.overflow = false;
    }

    /// Reads the first bytes and drops a UTF-8 byte order mark (spreadsheets add one).
    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        let mut head = [0u8; 3];
        let mut n = 0;
        while let Some(free) = head.get_mut(n..)
            && !free.is_empty()
        {
            match self.inner.read(free) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let head = head.get(..n).unwrap_or_default();
        if head != UTF8_BOM {
            self.pending = head.to_vec();
            self.pending_pos = 0;
        }
        Ok(())
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.pending.get(self.pending_pos..).unwrap_or_default();
        if rest.is_empty() {
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.pending_pos = 0;
            }
            return self.inner.read(buf);
        }
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pending_pos += n;
        Ok(n)
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.log.len() > MAX_ROW_SPAN {
            self.overflow = true;
            return Err(io::Error::other("row too long"));
        }
        if !self.started {
            self.start()?;
        }
        loop {
            let mut n = self.read_raw(buf)?;
            if n == 0 {
                return Ok(0);
            }
            if self.skip_line {
                let Some(newline) = buf
                    .get(..n)
                    .and_then(|b| b.iter().position(|&c| c == b'\n'))
                else {
                    continue;
                };
                self.skip_line = false;
                buf.copy_within(newline + 1..n, 0);
                n -= newline + 1;
                if n == 0 {
                    continue;
                }
            }
            self.log.extend_from_slice(buf.get(..n).unwrap_or_default());
            return Ok(n);
        }
    }
}

fn count(bytes: &[u8], byte: u8) -> u64 {
    bytes.iter().filter(|&&b| b == byte).count() as u64
}

fn trim_line_end(row: &[u8]) -> &[u8] {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    row.strip_suffix(b"\r").unwrap_or(row)
}

/// An integer as `%d` writes it: optional minus, digits.
fn parse_int(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether the 0-based field `index` of a raw row starts with a quote.
fn field_is_quoted(raw: &[u8], index: usize) -> bool {
    let (mut field, mut in_quotes, mut at_field_start) = (0, false, true);
    for &b in raw {
        if at_field_start && field == index {
            return b == b'"';
        }
        at_field_start = false;
        match b {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                field += 1;
                at_field_start = true;
            }
            _ => {}
        }
    }
    false
}

/// What a value looks like, for error messages (never the value: it may be personal data).
fn describe(v: &[u8]) -> String {
    if v.is_empty() {
        "is empty".into()
    } else if parse_int(v).is_some() {
        "holds an integer".into()
    } else if parse_utc(v).is_some() {
        "holds a time".into()
    } else if let Some(d) = Disposition::from_asterisk(v) {
        format!("holds the disposition word {:?}", d.as_asterisk())
    } else if let Some(flag) = AMA_FLAGS.iter().find(|f| f.as_bytes() == v) {
        format!("holds the AMA flag word {flag:?}")
    } else {
        format!("holds {} bytes of other text", v.len())
    }
}

fn parse_row(fields: &ByteRecord, line: u64, raw: &[u8]) -> Result<CallRecord, Misfit> {
    let Some(layout) = Layout::for_columns(fields.len()) else {
        return Err(Misfit {
            column: None,
            reason: format!(
                "{} columns, but cdr_csv rows have 16 to 21 (16, 18 or 21 usually)",
                fields.len()
            ),
        });
    };
    let field = |i: usize| fields.get(i).unwrap_or_default();
    let misfit = |i: usize, expected: &str| Misfit {
        column: Some(i + 1),
        reason: format!(
            "column {} ({}) should be {expected} but {}",
            i + 1,
            layout.column_name(i),
            describe(field(i))
        ),
    };
    let time =
        |i: usize| parse_utc(field(i)).ok_or_else(|| misfit(i, "a time YYYY-MM-DD HH:MM:SS"));
    let int = |i: usize| parse_int(field(i)).ok_or_else(|| misfit(i, "an integer"));

    let start = time(9)?;
    let answer = if field(10).is_empty() {
        None
    } else {
        Some(time(10)?)
    };
    let end = time(11)?;
    let duration_secs = int(12)?;
    let billsec = int(13)?;
    let disposition = Disposition::from_asterisk(field(14)).ok_or_else(|| {
        misfit(
            14,
            "one of NO ANSWER, FAILED, BUSY, ANSWERED, CONGESTION, CANCEL, UNKNOWN",
        )
    })?;
    let ama = field(15);
    if !AMA_FLAGS.iter().any(|f| f.as_bytes() == ama) {
        return Err(misfit(15, "one of OMIT, BILLING, DOCUMENTATION, Unknown"));
    }

    let mut next = 16;
    let mut optional = |present: bool| {
        present.then(|| {
            next += 1;
            next - 1
        })
    };
    let uniqueid = optional(layout.uniqueid);
    let userfield = optional(layout.userfield);
    let peeraccount = optional(layout.newcols);
    let linkedid = optional(layout.newcols);
    let sequence = match optional(layout.newcols) {
        Some(i) if field(i).is_empty() => None,
        Some(i) => Some(int(i)?),
        None => None,
    };

    let clid = field(4);
    Ok(CallRecord {
        source_format: Format::AsteriskCsv,
        line,
        leg_id: uniqueid.and_then(|i| text(field(i))),
        linked_id: linkedid.and_then(|i| text(field(i))),
        account_code: text(field(0)),
        caller_raw: field(1).to_vec(),
        caller_name_raw: name_from_clid(clid),
        clid_raw: bytes(clid),
        callee_raw: field(2).to_vec(),
        context: text(field(3)),
        channel: text(field(5)),
        dst_channel: text(field(6)),
        last_app: text(field(7)),
        last_data: bytes(field(8)),
        start,
        answer,
        end,
        duration_secs,
        billsec,
        disposition,
        hangup_cause: None,
        ama_flags: text(ama),
        user_field: userfield.and_then(|i| bytes(field(i))),
        peer_account: peeraccount.and_then(|i| text(field(i))),
        sequence,
        ip_address: None,
        roaming_network: None,
        data_bytes: None,
        direction: None,
        csv_layout: Some(CsvLayout {
            columns: u8::try_from(layout.columns()).unwrap_or(u8::MAX),
            quoted_empty_time: answer.is_none() && field_is_quoted(raw, 10),
        }),
        raw_hash: raw_hash(raw),
        occurrence: 0,
    })
}

/// Writes records as Asterisk `cdr_csv` rows, quoting exactly as Asterisk does: strings
/// double-quoted with inner quotes doubled, `duration`, `billsec` and `sequence` bare, an
/// unanswered call's answer time empty and bare, LF line ends.
///
/// Each row gets the columns of its [`CallRecord::csv_layout`] (when unset: 18, the usual
/// install, or 21 when the record has a `peer_account`, `linked_id` or `sequence`), and an
/// unset answer time is written as that layout says (empty, or `""`). The `clid` column is
/// [`CallRecord::clid_raw`] when set, else (for records not read from cdr_csv)
/// `"name" <number>` or the bare number. Rows read by
/// [`asterisk_csv`] are reproduced byte for byte, except text fields that were not UTF-8
/// outside the raw byte fields.
pub fn write_asterisk_csv<'a, I, W>(records: I, mut writer: W) -> io::Result<()>
where
    I: IntoIterator<Item = &'a CallRecord>,
    W: Write,
{
    let mut row = Vec::with_capacity(512);
    for record in records {
        row.clear();
        encode_row(record, &mut row);
        writer.write_all(&row)?;
    }
    writer.flush()
}

fn encode_row(r: &CallRecord, out: &mut Vec<u8>) {
    let newcols_used = r.peer_account.is_some() || r.linked_id.is_some() || r.sequence.is_some();
    let layout = r
        .csv_layout
        .and_then(|l| Layout::for_columns(usize::from(l.columns)))
        .or_else(|| Layout::for_columns(if newcols_used { 21 } else { 18 }))
        .unwrap_or(Layout {
            uniqueid: true,
            userfield: true,
            newcols: false,
        });
    let s = |v: Option<&str>| v.unwrap_or_default().as_bytes().to_vec();
    let clid = match (&r.clid_raw, &r.caller_name_raw) {
        (Some(clid), _) => clid.clone(),
        // Read from cdr_csv: the clid column was empty.
        (None, _) if r.source_format == Format::AsteriskCsv => Vec::new(),
        (None, Some(name)) => {
            let mut clid = Vec::with_capacity(name.len() + r.caller_raw.len() + 5);
            clid.push(b'"');
            clid.extend_from_slice(name);
            clid.extend_from_slice(b"\" <");
            clid.extend_from_slice(&r.caller_raw);
            clid.push(b'>');
            clid
        }
        (None, None) => r.caller_raw.clone(),
    };

    let mut cells: Vec<Cell> = vec![
        Cell::Quoted(s(r.account_code.as_deref())),
        Cell::Quoted(r.caller_raw.clone()),
        Cell::Quoted(r.callee_raw.clone()),
        Cell::Quoted(s(r.context.as_deref())),
        Cell::Quoted(clid),
        Cell::Quoted(s(r.channel.as_deref())),
        Cell::Quoted(s(r.dst_channel.as_deref())),
        Cell::Quoted(s(r.last_app.as_deref())),
        Cell::Quoted(r.last_data.clone().unwrap_or_default()),
        Cell::Time(Some(r.start)),
        Cell::Time(r.answer),
        Cell::Time(Some(r.end)),
        Cell::Int(Some(r.duration_secs)),
        Cell::Int(Some(r.billsec)),
        Cell::Quoted(r.disposition.as_asterisk().as_bytes().to_vec()),
        Cell::Quoted(
            r.ama_flags
                .as_deref()
                .unwrap_or("Unknown")
                .as_bytes()
                .to_vec(),
        ),
    ];
    if layout.uniqueid {
        cells.push(Cell::Quoted(s(r.leg_id.as_deref())));
    }
    if layout.userfield {
        cells.push(Cell::Quoted(r.user_field.clone().unwrap_or_default()));
    }
    if layout.newcols {
        cells.push(Cell::Quoted(s(r.peer_account.as_deref())));
        cells.push(Cell::Quoted(s(r.linked_id.as_deref())));
        cells.push(Cell::Int(r.sequence));
    }
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match cell {
            Cell::Quoted(v) => {
                out.push(b'"');
                for &b in &v {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            Cell::Time(Some(t)) => {
                out.push(b'"');
                out.extend_from_slice(format_utc(t).as_bytes());
                out.push(b'"');
            }
            Cell::Int(Some(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Cell::Time(None) if r.csv_layout.is_some_and(|l| l.quoted_empty_time) => {
                out.extend_from_slice(b"\"\"");
            }
            Cell::Time(None) | Cell::Int(None) => {}
        }
    }
    out.push(b'\n');
}

enum Cell {
    Quoted(Vec<u8>),
    Time(Option<i64>),
    Int(Option<i64>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        for n in 16..=21 {
            let layout = Layout::for_columns(n).unwrap();
            assert_eq!(layout.columns(), n);
            assert_ne!(layout.column_name(n - 1), "extra");
        }
        assert!(Layout::for_columns(15).is_none());
        assert!(Layout::for_columns(22).is_none());
        let l19 = Layout::for_columns(19).unwrap();
        assert_eq!(l19.column_name(16), "peeraccount");
        assert_eq!(l19.column_name(18), "sequence");
        assert_eq!(Layout::for_columns(17).unwrap().column_name(16), "uniqueid");
    }

    #[test]
    fn describes_without_quoting() {
        assert_eq!(describe(b""), "is empty");
        assert_eq!(describe(b"12"), "holds an integer");
        assert_eq!(describe(b"2020-01-01 00:00:00"), "holds a time");
        assert_eq!(describe(b"+441234567890"), "holds 13 bytes of other text");
    }

    #[test]
    fn quoted_fields() {
        let raw = br#""a","b,""c""",,"",5"#;
        let quoted: Vec<bool> = (0..6).map(|i| field_is_quoted(raw, i)).collect();
        assert_eq!(quoted, [true, true, false, true, false, false]);
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"5 "), None);
        assert_eq!(parse_int(b"+5"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
    }
}
