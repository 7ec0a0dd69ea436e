//! Framing: physical lines → logical (unfolded) content lines → cards, with line numbers.
//!
//! calcard parses the properties but reports no positions and skips what it cannot read,
//! so this layer finds the cards, checks every content line's shape and remembers where
//! each property starts. It handles CRLF, LF, bare CR and the CR CR LF that some iOS
//! exports contain, folding with a space or tab, vCard 2.1 quoted-printable soft line
//! breaks (`=` at the end of a line) and 2.1 base64 blocks whose lines are not indented.

use crate::error::{VcardError, excerpt};

/// One content line after unfolding, with the physical line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Logical {
    /// 1-based physical line number of the first line.
    pub line: usize,
    /// 1-based physical line number of the last line (after folds and continuations).
    pub end_line: usize,
    /// Unfolded text. Quoted-printable soft breaks stay in as `\r\n` (calcard decodes them).
    pub text: Vec<u8>,
}

/// The parts of a content line before its value.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    /// `group.NAME` as written.
    pub prefix: &'a [u8],
    pub name: &'a [u8],
    /// (name, value) pairs; `None` for a vCard 2.1 bare parameter such as `CELL`.
    pub params: Vec<(&'a [u8], Option<&'a [u8]>)>,
    pub value: &'a [u8],
}

impl Head<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    fn has_param(&self, name: &str, value: &str) -> bool {
        self.params.iter().any(|(n, v)| match v {
            Some(v) => {
                n.eq_ignore_ascii_case(name.as_bytes())
                    && unquote(v).eq_ignore_ascii_case(value.as_bytes())
            }
            None => n.eq_ignore_ascii_case(value.as_bytes()),
        })
    }

    pub fn is_quoted_printable(&self) -> bool {
        self.has_param("ENCODING", "QUOTED-PRINTABLE")
    }

    /// `ENCODING=b` (3.0), `ENCODING=BASE64` or bare `BASE64` (2.1).
    pub fn is_base64(&self) -> bool {
        self.has_param("ENCODING", "BASE64") || self.has_param("ENCODING", "B")
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Splits `[group.]NAME[;PARAM[=VALUE]]*:VALUE`. `None` when the line has not that shape.
pub(crate) fn parse_head(text: &[u8]) -> Option<Head<'_>> {
    let name_end = text.iter().position(|b| !is_name_byte(*b) && *b != b'.')?;
    let full_name = text.get(..name_end)?;
    // At most one group prefix; both parts non-empty.
    let name = match full_name.iter().position(|b| *b == b'.') {
        Some(dot) => {
            let (group, rest) = (full_name.get(..dot)?, full_name.get(dot + 1..)?);
            if group.is_empty() || rest.contains(&b'.') {
                return None;
            }
            rest
        }
        None => full_name,
    };
    if name.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut pos = name_end;
    loop {
        match text.get(pos)? {
            b':' => {
                return Some(Head {
                    prefix: full_name,
                    name,
                    params,
                    value: text.get(pos + 1..)?,
                });
            }
            b';' => {
                let start = pos + 1;
                let mut in_quotes = false;
                let mut end = start;
                while let Some(&b) = text.get(end) {
                    match b {
                        b'"' => in_quotes = !in_quotes,
                        b';' | b':' if !in_quotes => break,
                        _ => {}
                    }
                    end += 1;
                }
                let param = text.get(start..end)?;
                let (pname, pvalue) = match param.iter().position(|b| *b == b'=') {
                    Some(eq) => (param.get(..eq)?, Some(param.get(eq + 1..)?)),
                    None => (param, None),
                };
                let pname = trim_ascii(pname);
                if !pname.is_empty() {
                    if !pname.iter().all(|b| is_name_byte(*b)) {
                        return None;
                    }
                    params.push((pname, pvalue));
                }
                pos = end;
            }
            _ => return None,
        }
    }
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Physical lines as (1-based number, bytes without the line ending).
fn physical_lines(input: &[u8]) -> Vec<(usize, &[u8])> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    // LF (with any number of CRs before it) ends a line; a file with no LF at all uses CR.
    let sep = if input.contains(&b'\n') { b'\n' } else { b'\r' };
    let mut lines: Vec<(usize, &[u8])> = input
        .split(|b| *b == sep)
        .enumerate()
        .map(|(i, mut line)| {
            while let Some(rest) = line.strip_suffix(b"\r") {
                line = rest;
            }
            (i + 1, line)
        })
        .collect();
    if lines.last().is_some_and(|(_, l)| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn starts_with_ws(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// Unfolds physical lines into logical content lines (blank lines are kept as empty ones).
fn logical_lines(input: &[u8]) -> Vec<Logical> {
    let phys = physical_lines(input);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&(line, first)) = phys.get(i) {
        i += 1;
        let mut text = first.to_vec();
        // Whether the value is quoted-printable; `None` until the head (up to the colon)
        // has been read. Looked for again only when a colon arrives, so that a long line
        // without one costs linear time.
        let mut quoted_printable = parse_head(&text).map(|h| h.is_quoted_printable());
        loop {
            let qp_soft_break = quoted_printable == Some(true) && text.ends_with(b"=");
            let appended = match phys.get(i) {
                // A soft break: the next line continues the value whatever it starts with.
                Some((_, next)) if qp_soft_break => {
                    text.extend_from_slice(b"\r\n");
                    text.extend_from_slice(next);
                    next
                }
                Some((_, next)) if starts_with_ws(next) && !text.is_empty() => {
                    let rest = next.get(1..).unwrap_or_default();
                    text.extend_from_slice(rest);
                    rest
                }
                _ => break,
            };
            i += 1;
            if quoted_printable.is_none() && appended.contains(&b':') {
                quoted_printable = parse_head(&text).map(|h| h.is_quoted_printable());
            }
        }
        // vCard 2.1 base64 runs until a blank line; its lines need not be indented. A line
        // with a colon is a property, never base64 (which has no colon).
        if parse_head(&text).is_some_and(|h| h.is_base64()) {
            while let Some((_, next)) = phys.get(i) {
                if next.is_empty() || next.contains(&b':') {
                    break;
                }
                text.extend_from_slice(trim_ascii(next));
                i += 1;
            }
        }
        let end_line = i
            .checked_sub(1)
            .and_then(|j| phys.get(j))
            .map_or(line, |(n, _)| *n);
        out.push(Logical {
            line,
            end_line,
            text,
        });
    }
    out
}

/// One card: its content lines between BEGIN and END.
#[derive(Debug)]
pub(crate) struct RawCard {
    /// 1-based position in the input.
    pub index: usize,
    pub begin_line: usize,
    pub lines: Vec<Logical>,
}

impl RawCard {
    /// The card as UTF-8 text for calcard: one unfolded property per line, CRLF.
    pub fn text(&self) -> Result<String, VcardError> {
        let mut out = String::from("BEGIN:VCARD\r\n");
        for logical in &self.lines {
            let text = std::str::from_utf8(&logical.text).map_err(|_| {
                let name = parse_head(&logical.text)
                    .map(|h| String::from_utf8_lossy(h.name).to_ascii_uppercase())
                    .unwrap_or_default();
                VcardError::Malformed {
                    card: self.index,
                    line: logical.line,
                    reason: format!(
                        "{name}: not valid UTF-8 (8-bit text must be UTF-8, or \
                         quoted-printable with a CHARSET)"
                    ),
                }
            })?;
            match bare_quoted_printable(text) {
                Some(rewritten) => out.push_str(&rewritten),
                None => out.push_str(text),
            }
            out.push_str("\r\n");
        }
        out.push_str("END:VCARD\r\n");
        Ok(out)
    }

    /// The first physical line of the `n`th (0-based) property called `name`.
    pub fn line_of(&self, name: &str, n: usize) -> usize {
        self.property_lines(name)
            .nth(n)
            .map_or(self.begin_line, |l| l.line)
    }

    /// The content lines of the property `name` (any group), in order.
    pub fn property_lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Logical> {
        self.lines
            .iter()
            .filter(move |l| parse_head(&l.text).is_some_and(|h| h.is(name)))
    }
}

/// vCard 2.1 allows a bare `QUOTED-PRINTABLE` parameter, which calcard does not take as
/// an encoding: spell it `ENCODING=QUOTED-PRINTABLE`.
fn bare_quoted_printable(text: &str) -> Option<String> {
    let head = parse_head(text.as_bytes())?;
    let is_bare = |(n, v): &(&[u8], Option<&[u8]>)| {
        v.is_none() && n.eq_ignore_ascii_case(b"QUOTED-PRINTABLE")
    };
    if !head.params.iter().any(is_bare) {
        return None;
    }
    let mut out = String::from_utf8_lossy(head.prefix).into_owned();
    for param in &head.params {
        out.push(';');
        if is_bare(param) {
            out.push_str("ENCODING=QUOTED-PRINTABLE");
        } else {
            out.push_str(&String::from_utf8_lossy(param.0));
            if let Some(v) = param.1 {
                out.push('=');
                out.push_str(&String::from_utf8_lossy(v));
            }
        }
    }
    out.push(':');
    out.push_str(&String::from_utf8_lossy(head.value));
    Some(out)
}

fn is_marker(head: &Head<'_>, name: &str) -> bool {
    head.is(name) && head.params.is_empty() && trim_ascii(head.value).eq_ignore_ascii_case(b"VCARD")
}

/// Splits the input into cards, checking the framing and the shape of every line.
pub(crate) fn split_cards(input: &[u8]) -> Result<Vec<RawCard>, VcardError> {
    let mut cards = Vec::new();
    let mut open: Option<RawCard> = None;
    let mut last_line = 0;
    for logical in logical_lines(input) {
        last_line = logical.end_line;
        if trim_ascii(&logical.text).is_empty() {
            continue;
        }
        let head = parse_head(&logical.text);
        match open.as_mut() {
            None => match head {
                Some(h) if is_marker(&h, "BEGIN") => {
                    open = Some(RawCard {
                        index: cards.len() + 1,
                        begin_line: logical.line,
                        lines: Vec::new(),
                    });
                }
                Some(h) if is_marker(&h, "END") => {
                    return Err(VcardError::UnmatchedEnd { line: logical.line });
                }
                _ => {
                    return Err(VcardError::ExpectedBegin {
                        line: logical.line,
                        found: excerpt(&logical.text),
                    });
                }
            },
            Some(card) => {
                let Some(h) = head else {
                    return Err(VcardError::Malformed {
                        card: card.index,
                        line: logical.line,
                        reason: format!(
                            "not a vCard content line (expected NAME[;PARAMS]:VALUE): {:?}",
                            excerpt(&logical.text)
                        ),
                    });
                };
                if is_marker(&h, "END") {
                    if let Some(done) = open.take() {
                        cards.push(done);
                    }
                    continue;
                }
                if is_marker(&h, "BEGIN") {
                    return Err(VcardError::NestedBegin {
                        card: card.index,
                        begin_line: card.begin_line,
                        line: logical.line,
                    });
                }
                if h.is("BEGIN") || h.is("END") {
                    return Err(VcardError::Malformed {
                        card: card.index,
                        line: logical.line,
                        reason: format!(
                            "unexpected {:?} inside a vCard (nested components are not supported)",
                            excerpt(&logical.text)
                        ),
                    });
                }
                if h.is("VERSION") {
                    let version = trim_ascii(h.value);
                    if ![&b"2.1"[..], b"3.0", b"4.0"].contains(&version) {
                        return Err(VcardError::Malformed {
                            card: card.index,
                            line: logical.line,
                            reason: format!(
                                "unsupported VERSION {:?} (2.1, 3.0 and 4.0 are read)",
                                excerpt(version)
                            ),
                        });
                    }
                }
                card.lines.push(logical);
            }
        }
    }
    if let Some(card) = open {
        return Err(VcardError::MissingEnd {
            card: card.index,
            begin_line: card.begin_line,
            line: last_line,
        });
    }
    if cards.is_empty() {
        return Err(VcardError::Empty);
    }
    Ok(cards)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn head_shapes() {
        let h = parse_head(b"item1.TEL;type=CELL;PREF:123").unwrap();
        assert!(h.is("tel"));
        assert_eq!(h.params.len(), 2);
        assert_eq!(h.value, b"123");
        let h = parse_head(br#"TEL;TYPE="work,voice";PREF=1:tel:+1"#).unwrap();
        assert_eq!(h.params[0].1, Some(&br#""work,voice""#[..]));
        assert_eq!(h.value, b"tel:+1");
        assert!(parse_head(b"no colon here").is_none());
        assert!(parse_head(b":value").is_none());
        assert!(parse_head(b"a.b.c:value").is_none());
        assert!(parse_head(b"FN x:value").is_none());
    }

    #[test]
    fn encodings() {
        let h = parse_head(b"N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:=C3=91").unwrap();
        assert!(h.is_quoted_printable() && !h.is_base64());
        assert!(
            parse_head(b"NOTE;QUOTED-PRINTABLE:x")
                .unwrap()
                .is_quoted_printable()
        );
        assert!(
            parse_head(b"PHOTO;ENCODING=b;TYPE=JPEG:x")
                .unwrap()
                .is_base64()
        );
        assert!(parse_head(b"PHOTO;BASE64;JPEG:x").unwrap().is_base64());
    }

    #[test]
    fn line_endings_and_folding() {
        let input = b"A:1\r\r\nB:2\r\n  x\r\n\tyz\nC:3\rstill C\n";
        let lines = logical_lines(input);
        let texts: Vec<_> = lines.iter().map(|l| (l.line, l.text.clone())).collect();
        assert_eq!(
            texts,
            vec![
                (1, b"A:1".to_vec()),
                (2, b"B:2 xyz".to_vec()),
                (5, b"C:3\rstill C".to_vec())
            ]
        );
        let cr_only = logical_lines(b"A:1\rB:2\r");
        assert_eq!(cr_only.len(), 2);
    }

    #[test]
    fn a_long_folded_line_without_a_colon_is_linear() {
        // 200,000 continuation lines: quadratic rescanning would take minutes.
        let mut input = b"BEGIN:VCARD\r\nGARBAGE".to_vec();
        for _ in 0..200_000 {
            input.extend_from_slice(b"\r\n AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        }
        input.extend_from_slice(b"\r\nEND:VCARD\r\n");
        let started = std::time::Instant::now();
        let err = split_cards(&input).unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    }

    #[test]
    fn quoted_printable_soft_breaks_and_bare_base64() {
        let input =
            b"N;ENCODING=QUOTED-PRINTABLE:=C3=\r\n=91;;\r\nPHOTO;BASE64:AAAA\r\nBBBB\r\n\r\nX:1";
        let lines = logical_lines(input);
        assert_eq!(
            lines[0].text,
            b"N;ENCODING=QUOTED-PRINTABLE:=C3=\r\n=91;;".to_vec()
        );
        assert_eq!(lines[1].text, b"PHOTO;BASE64:AAAABBBB".to_vec());
        assert_eq!((lines[3].line, lines[3].text.clone()), (6, b"X:1".to_vec()));
    }
}
