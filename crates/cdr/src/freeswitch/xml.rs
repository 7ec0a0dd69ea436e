//! FreeSWITCH `mod_xml_cdr`; documented on [`freeswitch_xml`].

use std::io::{self, BufRead, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::{Callflow, FsCdr, to_record};
use crate::error::RowError;
use crate::record::{CallRecord, Format, Runs};

/// Largest `<cdr>` element kept; larger ones are skipped with an error.
const MAX_RECORD: usize = 8 * 1024 * 1024;

/// Streaming reader of FreeSWITCH `mod_xml_cdr` documents; see [`freeswitch_xml`].
pub struct FreeswitchXml<R: BufRead> {
    reader: Reader<Recorder<R>>,
    buf: Vec<u8>,
    current: Option<Current>,
    done: bool,
    last_error_at: Option<u64>,
    runs: Runs,
}

/// The `<cdr>` being read.
struct Current {
    line: u64,
    /// Index of `<cdr` in the recorder's log.
    start: usize,
    cdr: FsCdr,
    flow: Option<Callflow>,
    /// Element names below `<cdr>`.
    path: Vec<Vec<u8>>,
    text: Vec<u8>,
    /// The element outgrew [`MAX_RECORD`]: fields are no longer collected.
    skipping: bool,
}

/// Reads FreeSWITCH `mod_xml_cdr` records from `reader`, one [`CallRecord`] or
/// [`RowError`] per `<cdr>` element.
///
/// Reads `<cdr>` elements (one per file as the module writes them; several in a stream, or
/// wrapped in another element, are read one after another) with `quick-xml`'s streaming
/// reader: one record's fields are held at a time. Values under `<variables>` are
/// URL-encoded unless the module's `encode-values` is off; see the [crate docs](crate) for
/// how that is detected and decoded and for the field mapping. XML entities (`&lt;`, `&#38;`) are resolved first, as any XML reader would.
///
/// A malformed document is a [`RowError`]; reading goes on from the next `<cdr>` the XML
/// reader can still find.
pub fn freeswitch_xml<R: BufRead>(reader: R) -> FreeswitchXml<R> {
    let mut reader = Reader::from_reader(Recorder {
        inner: reader,
        log: Vec::new(),
        consumed: 0,
        newlines: 0,
        overflow: false,
    });
    reader.config_mut().trim_text(false);
    FreeswitchXml {
        reader,
        buf: Vec::with_capacity(4096),
        current: None,
        done: false,
        last_error_at: None,
        runs: Runs::default(),
    }
}

impl<R: BufRead> Iterator for FreeswitchXml<R> {
    type Item = Result<CallRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.current.is_none() {
                self.reader.get_mut().forget();
            }
            self.buf.clear();
            let event = match self.reader.read_event_into(&mut self.buf) {
                Ok(event) => event,
                Err(error) => {
                    let at = self.reader.get_ref().consumed;
                    let line = self.error_line();
                    if self.last_error_at == Some(at) {
                        // No progress since the last error: nothing more can be read.
                        self.done = true;
                    }
                    self.last_error_at = Some(at);
                    let record_line = self.current.take().map_or(line, |c| c.line);
                    return Some(Err(RowError::new(
                        record_line,
                        format!("malformed XML at line {line}: {error}"),
                    )));
                }
            };
            let overflow = self.reader.get_ref().overflow;
            if let Some(current) = self.current.as_mut() {
                // Past the size limit: keep walking the element, stop collecting it.
                current.skipping |= overflow;
            }
            let finished = match (event, self.current.as_mut()) {
                (Event::Eof, current) => {
                    self.done = true;
                    return current.map(|c| {
                        Err(RowError::new(
                            c.line,
                            "truncated XML: the input ends inside <cdr>",
                        ))
                    });
                }
                (Event::Start(start), None) => {
                    if start.local_name().as_ref() == b"cdr" {
                        self.current = Some(self.begin_record());
                    }
                    false
                }
                (Event::Empty(start), None) => {
                    if start.local_name().as_ref() == b"cdr" {
                        let line = self.begin_record().line;
                        return Some(Err(RowError::new(line, "empty <cdr/> element")));
                    }
                    false
                }
                (Event::Start(start), Some(current)) => {
                    current.open(&start);
                    false
                }
                (Event::Empty(start), Some(current)) => {
                    current.open(&start);
                    current.close();
                    false
                }
                (Event::End(_), Some(current)) => {
                    if current.path.is_empty() {
                        true
                    } else {
                        current.close();
                        false
                    }
                }
                (Event::Text(text), Some(current)) => {
                    if !current.skipping {
                        current.text.extend_from_slice(&text);
                    }
                    false
                }
                (Event::CData(text), Some(current)) => {
                    if !current.skipping {
                        current.text.extend_from_slice(&text);
                    }
                    false
                }
                (Event::GeneralRef(reference), Some(current)) => {
                    if !current.skipping {
                        resolve(&reference, &mut current.text);
                    }
                    false
                }
                _ => false,
            };
            if finished && let Some(current) = self.current.take() {
                return Some(self.finish(current));
            }
        }
        None
    }
}

impl<R: BufRead> FreeswitchXml<R> {
    /// The line of the markup an error is in (quick-xml's `error_position`, the `<` it
    /// began at), counted in the recorder's log, which holds the current event or record.
    /// How far the parser had read when it gave up depends on how the input arrived
    /// (one buffer or many small reads); where the bad markup begins does not.
    fn error_line(&self) -> u64 {
        let recorder = self.reader.get_ref();
        let log_start = recorder.consumed - recorder.log.len() as u64;
        let at_end = recorder.newlines + 1;
        if recorder.overflow {
            return at_end;
        }
        match self
            .reader
            .error_position()
            .checked_sub(log_start)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| recorder.log.get(i..))
        {
            Some(after) => at_end - after.iter().filter(|&&b| b == b'\n').count() as u64,
            None => at_end,
        }
    }

    /// Just read `<cdr ...>`: the recorder's log holds that tag (and nothing before it).
    fn begin_record(&self) -> Current {
        let recorder = self.reader.get_ref();
        let start = recorder.log.iter().position(|&b| b == b'<').unwrap_or(0);
        let after = recorder.log.get(start..).unwrap_or_default();
        let line = recorder.newlines + 1 - after.iter().filter(|&&b| b == b'\n').count() as u64;
        Current {
            line,
            start,
            cdr: FsCdr::default(),
            flow: None,
            path: Vec::new(),
            text: Vec::new(),
            skipping: false,
        }
    }

    fn finish(&mut self, current: Current) -> Result<CallRecord, RowError> {
        let recorder = self.reader.get_ref();
        if recorder.overflow {
            return Err(RowError::new(
                current.line,
                format!(
                    "<cdr> element larger than {} MiB; skipped",
                    MAX_RECORD / 1024 / 1024
                ),
            ));
        }
        let raw = recorder.log.get(current.start..).unwrap_or_default();
        let mut record = to_record(current.cdr, Format::FreeswitchXml, current.line, raw)?;
        self.runs.number(&mut record);
        Ok(record)
    }
}

impl Current {
    fn open(&mut self, start: &BytesStart<'_>) {
        let name = start.local_name().as_ref().to_vec();
        if self.path.is_empty() && name == b"callflow" {
            let index = start
                .try_get_attribute("profile_index")
                .ok()
                .flatten()
                .and_then(|a| std::str::from_utf8(&a.value).ok()?.trim().parse().ok());
            self.flow = Some(Callflow {
                index,
                ..Callflow::default()
            });
        }
        self.path.push(name);
        self.text.clear();
    }

    fn close(&mut self) {
        let text = std::mem::take(&mut self.text);
        if self.skipping {
            self.path.pop();
            return;
        }
        let path: Vec<&[u8]> = self.path.iter().map(Vec::as_slice).collect();
        match path.as_slice() {
            [b"variables", name] => {
                self.cdr
                    .vars
                    .insert(String::from_utf8_lossy(name).into_owned(), text);
            }
            [b"channel_data", b"direction"] => self.cdr.channel_direction = Some(text),
            [b"callflow", b"caller_profile", name] => {
                if let Some(flow) = self.flow.as_mut() {
                    flow.profile
                        .insert(String::from_utf8_lossy(name).into_owned(), text);
                }
            }
            [b"callflow", b"times", name] => {
                if let Some(flow) = self.flow.as_mut() {
                    flow.times
                        .insert(String::from_utf8_lossy(name).into_owned(), text);
                }
            }
            [b"callflow"] => {
                if let Some(flow) = self.flow.take() {
                    self.cdr.offer_callflow(flow);
                }
            }
            _ => {}
        }
        self.path.pop();
    }
}

/// Appends what an entity or character reference stands for.
fn resolve(reference: &BytesRef<'_>, out: &mut Vec<u8>) {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        return;
    }
    let replacement: &[u8] = match &**reference {
        b"lt" => b"<",
        b"gt" => b">",
        b"amp" => b"&",
        b"quot" => b"\"",
        b"apos" => b"'",
        other => {
            out.push(b'&');
            out.extend_from_slice(other);
            b";"
        }
    };
    out.extend_from_slice(replacement);
}

/// Passes bytes through to the XML reader, keeping what it consumed since the last
/// [`Recorder::forget`] (one event outside a `<cdr>`, the whole element inside one) and
/// counting lines.
struct Recorder<R> {
    inner: R,
    log: Vec<u8>,
    consumed: u64,
    newlines: u64,
    overflow: bool,
}

impl<R> Recorder<R> {
    fn forget(&mut self) {
        self.log.clear();
        if self.log.capacity() > 64 * 1024 {
            self.log.shrink_to(64 * 1024);
        }
        self.overflow = false;
    }
}

impl<R: BufRead> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), available.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Recorder<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if amt > 0
            && let Ok(available) = self.inner.fill_buf()
        {
            let taken = available.get(..amt).unwrap_or(available);
            self.newlines += taken.iter().filter(|&&b| b == b'\n').count() as u64;
            if self.log.len() + taken.len() <= MAX_RECORD {
                self.log.extend_from_slice(taken);
            } else {
                self.overflow = true;
            }
        }
        self.inner.consume(amt);
        self.consumed += amt as u64;
    }
}
