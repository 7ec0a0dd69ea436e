//! What the fuzz targets share: a reader that hands its input over a few bytes at a time
//! (so that a streaming parser meets every buffer boundary), and line counting.

use std::io::{self, BufRead, Read};

use steward_cdr::{CallRecord, RowError};

/// Reads `data` at most `step` bytes per call, as a slow pipe or socket would.
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    /// `step` is at least 1.
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Trickle {
            data,
            step: step.max(1),
        }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        buf[..n].copy_from_slice(head);
        self.data = rest;
        Ok(n)
    }
}

impl BufRead for Trickle<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let n = self.step.min(self.data.len());
        Ok(&self.data[..n])
    }

    fn consume(&mut self, amt: usize) {
        self.data = &self.data[amt.min(self.data.len())..];
    }
}

/// The number of lines in `data` (a last line without its end counts; an empty input
/// has one, empty, line): the largest line number an error may name.
pub fn lines(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64 + 1
}

/// A read step between 1 and 8 bytes, taken from the input so that the fuzzer can vary it.
pub fn step(data: &[u8]) -> usize {
    1 + usize::from(data.last().copied().unwrap_or(0) % 8)
}

/// What every CDR target checks of a parse of `data` done twice, whole (`whole`) and a
/// few bytes at a time (`trickled`): the same records and errors, each naming a line of
/// the input.
pub fn same_and_located(
    data: &[u8],
    whole: &[Result<CallRecord, RowError>],
    trickled: &[Result<CallRecord, RowError>],
) {
    assert_eq!(whole, trickled, "the read buffer's size changed the result");
    let last = lines(data);
    for item in whole {
        let line = match item {
            Ok(r) => r.line,
            Err(e) => e.line,
        };
        assert!(
            (1..=last).contains(&line),
            "line {line} of {last}: {item:?}"
        );
    }
}
